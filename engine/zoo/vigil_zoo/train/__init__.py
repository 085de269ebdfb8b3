"""Trainers, one module per model; each has main(argv, prog), reached as `vigil-zoo train --model NAME`."""
