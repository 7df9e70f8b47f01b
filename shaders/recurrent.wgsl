// Recurrent layers (LSTM, GRU, RNN) family.
