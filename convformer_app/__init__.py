"""ConvFormer Lab, the Gradio app around the `convformer` library (which never imports Gradio).

A flat core, one module per concern: `controls` (the `Controls` value the page's configuration travels in),
`weights` (bundled / random / upload / trained / the ImageNet references, decided once: each loads, prepares
and describes itself), `engine` (start-up, the model thread, the model cache, the one inspection pass of every
weights choice -> `Run`), `references` (the Compare tab's ImageNet table), `views` (pure pictures, tables, words), `i18n` + `catalogue` (the page's language; every text, as data),
`safety` (what a stranger can cost) and `gradio_patches` (every change to Gradio's internals). Around it one
package per tab: `explore/`, `train/`, `compare/`, each with `page` (the tab's layout and events, `build()`)
and `handlers` (`train/` also `jobs`, a run's life, and `worker`, the child process it trains in). `app.py` at the repository root is
the page's outline.
"""
