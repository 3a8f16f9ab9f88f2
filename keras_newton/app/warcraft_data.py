"""``keras-newton data warcraft``: write the procedural Warcraft look-alike.

    keras-newton data warcraft --out data/warcraft [--n-train 10000] [--n-val 1000]
                               [--n-test 1000] [--grid 12] [--seed 0]

Writes ``{train,val,test}_{maps,vertex_weights,shortest_paths}.npy`` in the layout of the
original data set (see `keras_newton.datasets.generate_warcraft`), readable by
`keras_newton.datasets.load_warcraft`.
"""


def register(subparsers):
    """Adds the ``warcraft`` parser to the ``keras-newton data`` subcommands."""
    parser = subparsers.add_parser(
        "warcraft",
        help="generate the procedural Warcraft shortest-path look-alike",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=10000, help="training maps")
    parser.add_argument("--n-val", type=int, default=1000, help="validation maps")
    parser.add_argument("--n-test", type=int, default=1000, help="test maps")
    parser.add_argument("--grid", type=int, default=12, help="terrain grid side")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from keras_newton.datasets.warcraft import generate_warcraft

    info = generate_warcraft(
        args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
        grid=args.grid, seed=args.seed, verbose=True,
    )
    n = info["train"] + info["val"] + info["test"]
    print(f"wrote {n} maps to {args.out} in {info['seconds']:.1f} s")
    return 0
