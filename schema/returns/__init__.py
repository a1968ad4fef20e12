"""returns feature: types, queries, mutations, loaders."""
