"""The Explore tab: `page` lays it out and wires its events; `handlers` are the plain functions they call."""
