"""feedback feature: types, queries, mutations, loaders."""
