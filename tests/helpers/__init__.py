"""Helpers the tests share: generated face folders and photos, eval runs, callbacks."""
