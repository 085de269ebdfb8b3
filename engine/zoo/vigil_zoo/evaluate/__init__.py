"""Frame-level ROC AUC on the labelled test videos, one module per model; each has
main(argv, prog), reached as `vigil-zoo evaluate --model NAME`."""
