// Quantisation and the integer arithmetic of quantised models family.
