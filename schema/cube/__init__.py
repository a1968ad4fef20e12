"""Cube (OLAP) GraphQL: types generated from the semantic model, cube and cubeMeta."""
