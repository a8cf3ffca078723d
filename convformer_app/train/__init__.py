"""The Train tab: `page` lays it out and wires its events; `handlers` are the functions they call; `worker` is
the child process a run trains in."""
