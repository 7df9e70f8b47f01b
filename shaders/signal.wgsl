// Signal processing (DFT, STFT, windows) family.
