"""The app's catalogue (convformer_app/i18n.py): both languages everywhere, the same values, the README's
terms, the library's messages recognised, and handlers that answer in the language of the page."""
from __future__ import annotations

import re
import string
from pathlib import Path

import gradio as gr
import pytest

from convformer.config import ConvFormerConfig
from convformer_app import i18n

pytestmark = pytest.mark.app
ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
SAME_IN_BOTH = {"diagram.norm", "compare.col_flops"}  # names that are not translated (LayerNorm, MFLOPs)


def fields(template: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_bold_ends_where_markdown_renders_it(lang):
    """CommonMark closes ** only after a letter, or before a space or punctuation: '**模型：**vit' shows its
    asterisks, '**模型**：vit' is bold."""
    import unicodedata
    punct = lambda c: unicodedata.category(c).startswith("P")  # noqa: E731
    for key, (en, _) in i18n.TEXT.items():
        parts = i18n.text(key, lang, **{name: "" for name in fields(en)}).split("**")  # e.g. no reason given
        for inner, after in zip(parts[1::2], parts[2::2]):
            assert not (inner and punct(inner[-1]) and after and not after[0].isspace() and not punct(after[0])), \
                f"{key}: **{inner}**{after[:10]}"


@pytest.mark.parametrize("key", sorted(i18n.TEXT))
def test_every_key_has_both_languages_with_the_same_values(key):
    en, zh = i18n.TEXT[key]
    assert en.strip() and zh.strip()
    assert fields(en) == fields(zh), f"{key}: placeholders differ"
    if key not in SAME_IN_BOTH:
        assert CJK.search(zh), f"{key}: the Chinese text has no Chinese in it"
    for lang in i18n.LANGS:  # formats with its own placeholders
        i18n.text(key, lang, **{name: "1" for name in fields(en)})


def test_i18n_props_carry_no_format_fields():
    """A key given to the browser (tr) must not contain braces: the front end reads them as ICU arguments."""
    with pytest.raises(ValueError, match="values"):
        i18n.tr("config.ok")
    with pytest.raises(KeyError):
        i18n.tr("no.such.key")
    assert i18n.tr("ctl.fusion").key == "ctl.fusion"
    assert i18n.I18N.translations_dict["zh-CN"]["ctl.fusion"] == "融合阶段"


def glossary() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "app.md").read_text(encoding="utf-8")
    section = text.split("## Languages and glossary", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", section, re.M)
    return [(en, zh) for en, zh in rows if en != "English" and not en.startswith("---")]


def test_terms_follow_the_readme_glossary():
    """Wherever the English says a glossary term, the Chinese uses the glossary's word for it."""
    terms = glossary()
    assert len(terms) >= 25 and ("attention rollout", "注意力展开") in terms
    wrong = []
    for key, (en, zh) in i18n.TEXT.items():
        plain = re.sub(r"\{\w+\}", "", en).replace("-", " ")  # the words, not the placeholders
        for term, word in terms:
            if re.search(rf"\b{re.escape(term)}s?\b", plain, re.I) and word not in zh:
                wrong.append(f"{key}: {term!r} without {word!r}")
    assert not wrong, "\n".join(wrong)


def test_readme_zh_cn_is_linked_and_uses_the_glossary():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(README.zh-CN.md)" in readme.split("\n## ", 1)[0]  # linked before the first section
    # the Chinese README is one screen; its detail lives in docs/*.zh-CN.md, which it links
    zh = "\n".join(p.read_text(encoding="utf-8")
                   for p in [ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.zh-CN.md"))])
    for heading in ("快速开始", "输入与输出", "融合阶段", "应用"):
        assert re.search(rf"^## .*{heading}", zh, re.M), heading
    for word in ("早期融合", "中期融合", "后期融合", "注意力展开", "类激活图", "卷积激活", "张量形状", "超参数", "检查点"):
        assert word in zh


def bad_configs() -> list[dict]:
    """One config per rule of convformer.config.validate."""
    return [dict(fusion="middle"), dict(pool="max"), dict(merge="sum"), dict(img_size=0), dict(embed_dim=0),
            dict(num_heads=0), dict(mlp_ratio=0.1), dict(drop_rate=1.0), dict(conv_widths=()),
            dict(conv_depths=(1,)), dict(mean=(0.5, 0.5)), dict(std=(0.0, 1.0, 1.0)), dict(embed_dim=100),
            dict(fusion="early", depth=0), dict(fusion="mid", pool="cls"), dict(img_size=8),
            dict(embed_dim=768, depth=400, num_heads=12), dict(fusion="vit", img_size=1024, patch_size=4),
            dict(fusion="cnn", img_size=2048, conv_widths=(1024, 1024, 1024, 1024))]


@pytest.mark.parametrize("changes", bad_configs(), ids=lambda c: ",".join(c))
def test_library_validation_errors_are_translated_with_their_values(changes):
    base = ConvFormerConfig(fusion="mid", conv_widths=(32, 64, 128, 192), conv_depths=(1, 1, 2, 2))
    with pytest.raises(ValueError) as caught:
        base.replace(**changes)
    message = str(caught.value)
    zh = i18n.translate(message, "zh-CN")
    assert i18n.match(message) is not None, message
    assert "不允许" in zh and "is not allowed" not in zh and "expected" not in zh, zh
    assert message.split(" is not allowed")[0] in zh  # name=value kept as it is
    assert re.findall(r"\d+", message) == re.findall(r"\d+", zh) or set(re.findall(r"\d+", message)) <= set(
        re.findall(r"\d+", zh))
    assert i18n.translate(message, "en") == message


def test_translate_keeps_what_it_does_not_know():
    assert i18n.translate("something new: 3 tokens", "zh-CN") == "something new: 3 tokens"
    wrapped = i18n.text("config.impossible", "en", detail="depth=0 is not allowed: fusion 'vit' needs at least "
                        "one transformer block")
    assert i18n.translate(wrapped, "zh-CN") == "⚠ **这个组合不可行**：depth=0 不允许：fusion 'vit' 至少需要一个 Transformer 块"


class FakeRequest(gr.Request):
    def __init__(self, cookie: str | None = None, accept: str = ""):
        super().__init__()
        self._cookie, self._accept = cookie, accept

    @property
    def cookies(self):
        return {i18n.COOKIE: self._cookie} if self._cookie else {}

    @property
    def headers(self):
        return {"accept-language": self._accept}


@pytest.mark.parametrize("cookie, accept, lang", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), (None, "en-US,en;q=0.9", "en"), (None, "fr;q=0.9, zh;q=0.8", "zh-CN"),
    (None, "", "en"), ("en", "zh-CN", "en"), ("zh-CN", "en-US", "zh-CN"), ("zh-TW", "zh-CN", "en"),
    (None, "de-DE", "en")])
def test_the_page_language_comes_from_the_cookie_then_accept_language(cookie, accept, lang):
    assert i18n.lang_of(FakeRequest(cookie, accept)) == lang
    assert i18n.lang_of(None) == "en"


def test_localized_handlers_answer_in_the_page_language_and_hide_the_request():
    def handler(fusion: str, n: float = 3) -> str:
        if n < 0:
            raise gr.Error(f"fusion={fusion!r} is not allowed: expected one of ('early', 'mid')")
        return i18n.text("config.ok", fusion=fusion, params="1.0 M", grid="")

    wrapped = i18n.localized(handler)
    assert list(__import__("inspect").signature(wrapped).parameters) == ["fusion", "n", "request"]
    assert wrapped("mid", 3, FakeRequest("zh-CN")) == "✓ mid 融合，1.0 M 个参数。"
    assert wrapped("mid", FakeRequest(None, "en-US")) == "✓ mid fusion, 1.0 M parameters."  # fewer inputs
    assert wrapped("mid") == "✓ mid fusion, 1.0 M parameters."  # the API: no page, English
    with pytest.raises(gr.Error) as caught:
        wrapped("x", -1, FakeRequest("zh-CN"))
    assert caught.value.message == "fusion='x' 不允许：应为以下之一：('early', 'mid')"
    assert i18n.LANG.get() == "en"  # reset after the call


def test_localized_generators_keep_the_language_on_every_step():
    def steps(n: int):
        for i in range(n):
            yield i18n.text("per_block.head_n", i=i)

    wrapped = i18n.localized(steps)
    assert __import__("inspect").isgeneratorfunction(wrapped)
    items = wrapped(2, FakeRequest("zh-CN"))
    assert next(items) == "第 0 个头"
    assert i18n.LANG.get() == "en"  # not leaked between steps
    assert list(items) == ["第 1 个头"]


# ---- no text the page shows bypasses the catalogue -----------------------------------------------------
MARKER = re.compile(r'^__i18n__\{"__type__": "translation_metadata", "key": "([^"]+)"\}$')
NEUTRAL = re.compile(r"^(### )?[a-z0-9_.\-]+$")  # fusion names, presets, merge modes: the same in every language


def page_texts() -> list[tuple[str, str, str]]:
    """(component, prop, text) for every text prop of the page as Gradio sends it to the browser."""
    import app
    out = []
    for c in app.demo.get_config_file()["components"]:
        props, name = c.get("props", {}), f"{c['type']}#{c['id']}"
        for prop in ("label", "info", "placeholder", "title"):
            if props.get(prop) is not None:
                out.append((name, prop, str(props[prop])))
        if c["type"] in ("markdown", "button", "html") and props.get("value") is not None:
            out.append((name, "value", str(props["value"])))
        for label, value in props.get("choices") or []:
            if label != value:
                out.append((name, "choice", str(label)))
    return out


def test_every_text_of_the_page_is_a_catalogue_key():
    texts = page_texts()
    assert len(texts) > 60
    bypass = [(c, p, t) for c, p, t in texts if t.strip() and not NEUTRAL.match(t) and not (
        MARKER.match(t) and MARKER.match(t)[1] in i18n.I18N.translations_dict["en"])]
    assert not bypass, "page text not in the catalogue:\n" + "\n".join(map(str, bypass))
    keys = {MARKER.match(t)[1] for _, _, t in texts if MARKER.match(t)}
    for must in ("tab.explore", "tab.train", "tab.compare", "ctl.fusion", "ctl.run", "rollout.explain"):
        assert must in keys


ENGLISH = re.compile(r"[A-Za-z]{3,}(?:[ ,;:'()-]+[A-Za-z]{3,})+")  # two English words in a row
NAMES = re.compile(r"`[^`]*`|<[^>]+>|ConvFormer|Grad-CAM|ImageNet|LayerNorm|Transformer|float32|[A-Za-z]+FLOPs|"
                   r"CoAtNet-nano|Hugging Face|"
                   r"\b(?:early|mid|late|cnn|vit|cpu|cuda|mps|shapes)\b|\bconvformer_\w+|[a-z_]+=\S+|\([^()]*\d[^()]*\)")


def english_left(text: str) -> list[str]:
    from convformer.data.shapes import CLASSES
    for name in CLASSES:
        text = re.sub(rf"\b{name}\b", "", text)
    return ENGLISH.findall(NAMES.sub(" ", re.sub(r"<style>.*?</style>", "", text, flags=re.S)))


@pytest.fixture(scope="module")
def zh():
    token = i18n.LANG.set("zh-CN")
    yield
    i18n.LANG.reset(token)


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, zh):
    from convformer.data.shapes import render
    from convformer_app.explore import handlers as explore
    path = tmp_path_factory.mktemp("i18n") / "shape.png"
    render(0, "test", 80)[0].save(path)
    from convformer_app.explore.handlers import PREDICT_OUTPUTS
    return dict(zip(PREDICT_OUTPUTS, explore.predict(str(path), "late", img_size=64, weights="random", top_k=3)))


def test_python_built_texts_come_from_the_catalogue(predicted, zh):
    """A run's texts in zh-CN: no English sentence left (values, names and code excepted)."""
    from convformer_app import views
    from convformer_app.compare import handlers as compare
    from convformer_app.explore import handlers as explore
    from convformer_app.train import handlers as train_tab
    texts = {name: predicted[name] for name in ("notice", "stats", "maps_note", "diagram", "cam_note")}
    table = predicted["table"]
    texts["table"] = " | ".join([*table["headers"], *(str(cell) for row in table["data"] for cell in row)])
    texts["choices"] = " | ".join(str(label) for label, _ in predicted["head"]["choices"][:2])
    texts["cam"] = str(predicted["cam_target"]["choices"][0][0])
    texts["bundled"] = views.weights_notice("bundled", {"classes": ["a", "b"], "dataset": "shapes",
                                                         "metrics": {"test_acc": 0.9, "val_acc": 0.8}}, "x.safetensors")
    texts["upload"] = views.weights_notice("upload", {"dataset": "my data"}, "mine.safetensors")
    texts["status_ok"] = explore.check_config("mid", img_size=64, weights="random")
    texts["status_bad"] = explore.check_config("mid", img_size=64, embed_dim=100, num_heads=3, weights="random")
    texts["train_model"] = train_tab.describe("mid", weights="random")
    texts["limits"] = train_tab.limits_text()
    texts["cancel"] = train_tab.cancel(FakeRequest())
    texts["compare"] = " | ".join(compare.headers()[0]["headers"])
    for name, value in texts.items():
        assert CJK.search(value), (name, value)
        assert not english_left(value), (name, english_left(value), value)
    photos = [caption for path, caption in explore.gallery() if "photo" in path]  # captions, set on load
    assert photos and all("照片" in caption and "photo" not in caption for caption in photos)
    assert "不允许" in texts["status_bad"] and "embed_dim=100" in texts["status_bad"]
    assert [v for _, v in predicted["head"]["choices"][:2]] == ["mean of heads", "head 0"]  # values stay


def test_cautions_and_messages_come_from_the_catalogue(monkeypatch, zh):
    """The 'unlike the Shapes data' caution (the library gives a number), the message when a checkpoint fixes
    the architecture, and the ImageNet reference's notice and table headers, in zh-CN."""
    from convformer_app.explore import handlers as explore
    from convformer_app import references
    from convformer_app.weights import defaults, reference, resolve
    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    explore.on_preset(*defaults("mid").replace(preset="convformer_mid_small").inputs())
    cat = ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg"
    texts = {"caution": explore.caution(str(cat), resolve(defaults("mid"))), "fixed": said[0] if said else "",
             "imagenet": reference("mid").notice, "imagenet_headers": " | ".join(references.headers())}
    for name, value in texts.items():
        assert CJK.search(value) and not english_left(value), (name, value)
    assert "0." in texts["caution"] and "convformer_mid_small" in texts["fixed"]


def test_errors_reach_the_page_in_its_language():
    from convformer_app.compare import handlers as compare
    from convformer_app.explore import handlers as explore
    for handler, args in ((explore.predict, (None, "mid")), (compare.compare_split, (5,)),
                          (explore.redraw_channels, (None, None))):
        with pytest.raises(gr.Error) as caught:
            i18n.localized(handler)(*args, FakeRequest("zh-CN"))
        assert CJK.search(caught.value.message) and not english_left(caught.value.message), caught.value.message
        with pytest.raises(gr.Error) as caught:
            i18n.localized(handler)(*args)  # the API: English
        assert not CJK.search(caught.value.message)


# ---- the page in a browser, in both languages ----------------------------------------------------------


def open_page(browser, server, locale: str):
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server.url)
    page.wait_for_selector("#run")
    # the status's verdict (a timer or "processing" can show there while it is being checked)
    page.wait_for_function("/[✓⚠]/.test(document.querySelector('#config-status')?.innerText || '')")
    return context, page


# (English, 中文) that the page shows before anything is run
MAIN = [("Explore", "探索"), ("Train", "训练"), ("Compare", "对比"), ("Fusion stage", "融合阶段"), ("Weights", "权重"),
        ("Hyperparameters", "超参数"), ("Attention rollout", "注意力展开"), ("Conv activations", "卷积激活"),
        ("Settings", "设置")]


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_the_page_speaks_the_browser_language(browser, server, locale):
    context, page = open_page(browser, server, locale)
    zh = locale == "zh-CN"
    body = page.inner_text("body")
    for en, cn in MAIN:
        assert (cn if zh else en) in body, (locale, en)
    assert page.get_by_role("button", name="运行" if zh else "Run", exact=True).is_visible()
    assert page.get_by_role("tab", name="探索" if zh else "Explore").count() >= 1
    notice, status = page.inner_text("#weights-notice"), page.inner_text("#config-status")
    assert ("权重" in notice) == zh and ("Weights" in notice) != zh
    assert bool(CJK.search(status)) == zh, status
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('float32')")
    stats = page.inner_text("#stats")
    assert ("个参数" in stats) == zh and ("parameters" in stats) != zh, stats
    context.close()


def test_the_language_switch_in_settings_changes_the_whole_page(browser, server):
    context, page = open_page(browser, server, "zh-CN")
    assert "权重" in page.inner_text("#weights-notice")
    page.get_by_text("设置", exact=True).last.click()
    page.get_by_role("combobox", name="Language").click()  # Gradio's language dropdown
    page.get_by_role("option", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    # labels switch in the browser; the notice and the config status are told again by the server
    page.wait_for_function("document.querySelector('#weights-notice')?.innerText.includes('Weights')")
    page.wait_for_function("!/[\\u4e00-\\u9fff]/.test(document.querySelector('#config-status')?.innerText)")
    assert page.get_by_role("tab", name="Explore").count() >= 1
    context.close()
