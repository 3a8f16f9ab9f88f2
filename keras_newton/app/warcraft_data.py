"""``keras-newton data warcraft``: write the procedural Warcraft look-alike.

    keras-newton data warcraft --out data/warcraft [--n-train 10000] [--n-val 1000]
                               [--n-test 1000] [--grid 12] [--seed 0]

Writes ``{train,val,test}_{maps,vertex_weights,shortest_paths}.npy`` in the layout of the
original data set (see `keras_newton.datasets.generate_warcraft`), readable by
`keras_newton.datasets.load_warcraft`.
"""


from keras_newton.app import common


def register(subparsers):
    """Adds the ``warcraft`` parser to the ``keras-newton data`` subcommands."""
    parser = subparsers.add_parser(
        "warcraft",
        help="generate the procedural Warcraft shortest-path look-alike",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-train", type=common.int_at_least(1), default=10000,
                        help="training maps (>= 1)")
    parser.add_argument("--n-val", type=common.int_at_least(0), default=1000,
                        help="validation maps")
    parser.add_argument("--n-test", type=common.int_at_least(0), default=1000,
                        help="test maps")
    parser.add_argument("--grid", type=common.int_at_least(2), default=12,
                        help="terrain grid side (>= 2)")
    parser.add_argument("--seed", type=common.int_at_least(0), default=0,
                        help="random seed")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from keras_newton.datasets.warcraft import generate_warcraft

    common.check_out_dir(args.out)
    info = generate_warcraft(
        args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
        grid=args.grid, seed=args.seed, verbose=True,
    )
    n = info["train"] + info["val"] + info["test"]
    print(f"wrote {n} maps to {args.out} in {info['seconds']:.1f} s")
    return 0
