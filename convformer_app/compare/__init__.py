"""The Compare tab: `page` lays it out and wires its events; `handlers` compare our five models (the ImageNet
references are `convformer_app.references`)."""
