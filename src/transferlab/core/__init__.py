"""The bottom layer: errors, the atomic store and hashing, one registry, results records,
the config tree, the safe checkpoint loader and the input spec. Imports nothing above it."""
