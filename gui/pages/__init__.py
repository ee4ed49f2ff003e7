"""One module per page, each exposing `content()` (drawn inside `theme.frame()`)."""
