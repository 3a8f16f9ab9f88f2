import sys

from keras_newton.bench.cli import main

sys.exit(main())
