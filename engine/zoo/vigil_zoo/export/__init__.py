"""Exporters to Vigil model packages (model.onnx + model.toml), one module per model; each has
main(argv, prog), reached as `vigil-zoo export --model NAME`."""
