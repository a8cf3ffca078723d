"""Screenshots of the first screen, before and after Run: light/dark x 1280x900/390x844 x en-US/zh-CN."""
import sys, time
from playwright.sync_api import sync_playwright
url, out = sys.argv[1], sys.argv[2]
combos = [("light", 1280, 900, "en-US"), ("dark", 390, 844, "zh-CN"), ("dark", 1280, 900, "zh-CN"), ("light", 390, 844, "en-US")]
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                          args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
    for scheme, w, h, loc in combos:
        ctx = b.new_context(viewport={"width": w, "height": h}, color_scheme=scheme, locale=loc)
        page = ctx.new_page(); page.set_default_timeout(120000)
        msgs = []
        page.on("console", lambda m: msgs.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
        page.goto(url); page.wait_for_selector("#run"); page.wait_for_timeout(3000)
        tag = f"{scheme}-{w}-{loc}"
        page.screenshot(path=f"{out}/{tag}-load.png")
        page.locator("#run").click(); page.wait_for_selector("#rollout img"); page.wait_for_timeout(1500)
        page.screenshot(path=f"{out}/{tag}-run.png")
        page.get_by_role("tab").filter(has_text="Train").first.click() if loc == "en-US" else page.get_by_role("tab").nth(1).click()
        page.wait_for_timeout(1500)
        page.screenshot(path=f"{out}/{tag}-train.png")
        print(tag, "console:", msgs[:6])
        ctx.close()
    b.close()
