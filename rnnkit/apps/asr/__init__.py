"""Speech recognition with CTC: features -> bidirectional RNN -> characters."""
