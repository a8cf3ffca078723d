"""ConvFormer Lab, the Gradio app around the `convformer` library (which never imports Gradio).

One module per concern: `controls` (the `Controls` value the page's configuration travels in), `weights`
(bundled / random / upload / trained, decided once), `session` (start-up, the model thread, the model
cache, one inspection pass -> `Run`), `views` (pure pictures, tables, words), and one module per tab:
`explore`, `train_tab`, `compare`, each with its page module (`explore_page`, `train_page`, `compare_page`:
the tab's layout and events, `build()`). `app.py` at the repository root is the page's outline.
"""
