"""Two console warnings that Gradio 6.31's own front end prints on every page, which the app cannot avoid
from Python, dropped by their exact text so that the console shows only what is worth reading (any other
warning or error still shows, and the browser test fails on it):

* "Too many arguments provided for the endpoint." (gradio-app/gradio#9895, open): the front end sends every
  input of an event, gr.State included, and warns when that is more than the endpoint's API parameters, which
  leave gr.State out. Every event here that reads a session's state (the last run, the trained checkpoint)
  triggers it; nothing is wrong.
* "The input spec uses Vega-Lite v5.17.0, but the current version of Vega-Lite is v6..." : Gradio's native
  plots write a v5 schema into the spec they give their bundled Vega-Lite 6.
"""
from __future__ import annotations

GRADIO_NOISE = ("Too many arguments provided for the endpoint.", "The input spec uses Vega-Lite v5")

HEAD = """<script>
(() => {
  const noise = %s;
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    const text = args.map(String).join(" ");
    if (!noise.some(n => text.includes(n))) warn(...args);
  };
})();
</script>""" % repr(list(GRADIO_NOISE)).replace("'", '"')
