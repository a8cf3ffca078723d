"""Detection and segmentation in the app: the Task choice's views (issue 23).

`draw` (pure pictures: boxes, masks, legends), `results` (what a detect / segment request keeps, and the
pictures and tables made from it; `DetectResult.of` takes any Detections-like value), `handlers` (the
/detect and /segment handlers and their redraws), `page` (layout and events in Explore), `texts` (their
English and Chinese texts). The models, decoding and Shapes scenes come from the library: convformer.tasks.
"""
