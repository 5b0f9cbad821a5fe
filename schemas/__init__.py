"""pandera ``DataFrameModel``s: the data contracts of every DataFrame asset."""
