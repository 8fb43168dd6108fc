"""gReLU-facing model classes (import gReLU); registered on grelu.model.models by grelu_caduceus."""
