"""The model core: landmark schemes, SmallNet, the grid codec, the dual loss, metrics and
the LightningModule."""
