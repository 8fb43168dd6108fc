"""Caduceus for gReLU."""
