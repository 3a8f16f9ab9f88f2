import sys

from keras_newton.app.cli import main

sys.exit(main())
