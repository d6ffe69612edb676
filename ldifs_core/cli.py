"""Command-line front end: `python -m ldifs_core run|sweep|list|show|export|wise`.

Thin over runner and store; `main(argv)` returns an exit code so tests call it in-process.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
from pathlib import Path

from ldifs_core.config import DEFAULT_LAMBDA, INITS, OBJECTIVES, RunConfig
from ldifs_core.errors import LabError
from ldifs_core.store import RunStore


def add_run_options(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    defaults = RunConfig()
    parser.add_argument("--model", help="open_clip model name (default: the embedded model)")
    parser.add_argument("--pretrained", help="open_clip pretrained tag or a local checkpoint file")
    parser.add_argument("--dataset", default=defaults.dataset, help="registered dataset name or an ImageFolder path")
    parser.add_argument("--eval-datasets", help="comma list (default: every other concept-bank domain)")
    if sweep:
        parser.add_argument("--objectives", default="ce,ldifs", help=f"comma list of {','.join(OBJECTIVES)}")
        parser.add_argument("--lams", default="", help="comma list of λ values for ldifs/l2sp (default: the default λ)")
        parser.add_argument("--seeds", default="0", help="comma list of seeds")
    else:
        parser.add_argument("--objective", default=defaults.objective, choices=OBJECTIVES)
        parser.add_argument("--lam", type=float, help=f"regulariser weight (default per objective: {DEFAULT_LAMBDA})")
        parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--init", default=defaults.init, choices=INITS, help="head init: zero-shot or linear probe")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or mps")
    parser.add_argument("--augment", action="store_true", help="random shifts of the training images")
    parser.add_argument("--ldifs-variant", default=defaults.ldifs_variant, choices=("paper", "released"))
    parser.add_argument("--precompute-frozen", action="store_true",
                        help="compute the frozen encoder's features once (no augmentation)")
    parser.add_argument("--data-root", help="root of torchvision datasets")
    parser.add_argument("--download", action="store_true", help="allow downloading a torchvision dataset")
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP pictures (faster)")
    parser.add_argument("--train-limit", type=int, default=defaults.train_limit, help="fine-tuning pool size")
    parser.add_argument("--eval-limit", type=int, default=defaults.eval_limit, help="test images per dataset")
    parser.add_argument("--probe-limit", type=int, default=defaults.probe_limit,
                        help="train images per dataset for linear probes")
    parser.add_argument("--store", type=Path, help="run store folder (default: $LDIFS_STORE or ./runs)")
    parser.add_argument("--json", type=Path, help="also write the metrics JSON here")


def config_from(args: argparse.Namespace, objective: str, lam: float | None, seed: int) -> RunConfig:
    return RunConfig(
        dataset=args.dataset, objective=objective, lam=lam, init=args.init, model=args.model,
        pretrained=args.pretrained, seed=seed, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
        device=args.device, augment=args.augment, ldifs_variant=args.ldifs_variant,
        precompute_frozen=args.precompute_frozen, data_root=args.data_root, download=args.download,
        eval_datasets=[d.strip() for d in args.eval_datasets.split(",") if d.strip()] if args.eval_datasets else None,
        umap_points=0 if args.no_umap else RunConfig.umap_points, train_limit=args.train_limit,
        eval_limit=args.eval_limit, probe_limit=args.probe_limit,
    ).validate()


def run_with_progress(cfg: RunConfig, store: RunStore) -> str:
    from tqdm import tqdm

    from ldifs_core.runner import execute

    with tqdm(total=cfg.steps, desc=cfg.describe(), unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        def on_event(event):
            bar.update(event.step - bar.n)
            bar.set_postfix(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.0f}")

        return execute(cfg, store, on_event=on_event)


def summary_line(metrics: dict) -> str:
    down = metrics["downstream"]
    return (f"{metrics['run_id']}  {metrics['config']['objective']:<6} {down['dataset']}: "
            f"{down['zero_shot_before']:.1f}% -> {down['accuracy_after']:.1f}%   forgetting: "
            f"ZS {metrics['mean_zs_delta']:+.1f} pts, LP {metrics['mean_lp_delta']:+.1f} pts   "
            f"({metrics['timings']['total_s']:.0f} s)")


def finish_run(store: RunStore, run_id: str, json_path: Path | None) -> int:
    record = store.get(run_id)
    if record.status != "done":
        print(f"error: run {run_id} {record.status}: {record.message}", file=sys.stderr)
        return 1
    metrics = store.metrics(run_id)
    print(summary_line(metrics))
    if json_path:
        json_path.write_text(json.dumps(metrics, indent=2))
    return 0


def cmd_run(args) -> int:
    store = RunStore(args.store)
    cfg = config_from(args, args.objective, args.lam, args.seed)
    return finish_run(store, run_with_progress(cfg, store), args.json)


def cmd_sweep(args) -> int:
    store = RunStore(args.store)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    lams = [float(x) for x in args.lams.split(",") if x.strip()] or [None]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    configs = []
    for objective, seed in itertools.product(objectives, seeds):
        for lam in (lams if objective in ("ldifs", "l2sp") else [None]):
            configs.append(config_from(args, objective, lam, seed))
    results, code = [], 0
    for cfg in configs:
        run_id = run_with_progress(cfg, store)
        code |= finish_run(store, run_id, None)
        if store.get(run_id).status == "done":
            results.append(store.metrics(run_id))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return code


def cmd_list(args) -> int:
    store = RunStore(args.store)
    records = store.list(dataset=args.dataset, objective=args.objective)
    if not records:
        print("No runs yet. Start one with `python -m ldifs_core run`.")
    for r in records:
        s = r.summary
        numbers = (f"acc {s['accuracy_after']:.1f}  ZS Δ {s['mean_zs_delta']:+.1f}  LP Δ {s['mean_lp_delta']:+.1f}"
                   if "accuracy_after" in s else r.message[:60])
        print(f"{r.run_id}  {r.status:<11} {r.config.describe():<45} {numbers}")
    return 0


def cmd_show(args) -> int:
    store = RunStore(args.store)
    record = store.get(args.run)
    if record.status != "done":
        print(json.dumps({"run_id": record.run_id, "status": record.status, "message": record.message,
                          "config": record.config.to_dict(), "progress": record.progress}, indent=2))
        return 0
    print(json.dumps(store.metrics(args.run), indent=2))
    return 0


def metrics_rows(metrics: dict) -> list[dict]:
    """Flat rows for CSV: one per (dataset, class) plus one per dataset summary (class_name empty)."""
    rows = []
    down = metrics["downstream"]
    rows.append({"run_id": metrics["run_id"], "role": "downstream", "dataset": down["dataset"], "class_name": "",
                 "zs_before": down["zero_shot_before"], "zs_after": down["zero_shot_after"],
                 "lp_before": "", "lp_after": "", "accuracy_after": down["accuracy_after"]})
    for entry in metrics["forgetting"]:
        rows.append({"run_id": metrics["run_id"], "role": "forgetting", "dataset": entry["dataset"], "class_name": "",
                     "zs_before": entry["zs_before"], "zs_after": entry["zs_after"], "lp_before": entry["lp_before"],
                     "lp_after": entry["lp_after"], "accuracy_after": ""})
        for c in entry["per_class"]:
            rows.append({"run_id": metrics["run_id"], "role": "forgetting", "dataset": entry["dataset"],
                         "class_name": c["class_name"], "zs_before": c["before"], "zs_after": c["after"],
                         "lp_before": "", "lp_after": "", "accuracy_after": ""})
    return rows


def metrics_csv(metrics: dict) -> str:
    rows = metrics_rows(metrics)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def cmd_export(args) -> int:
    metrics = RunStore(args.store).metrics(args.run)
    text = metrics_csv(metrics) if args.format == "csv" else json.dumps(metrics, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_wise(args) -> int:
    from ldifs_core.runner import wise_ft_metrics

    store = RunStore(args.store)
    for alpha in [float(a) for a in args.alphas.split(",")]:
        m = wise_ft_metrics(store, args.run, alpha)
        print(f"α={alpha:.2f}  {m['downstream']['dataset']}: {m['downstream']['accuracy_after']:.1f}%   "
              f"forgetting: ZS {m['mean_zs_delta']:+.1f} pts, LP {m['mean_lp_delta']:+.1f} pts")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ldifs_core", description="LDIFS Lab: fine-tune CLIP, measure "
                                     "concept forgetting.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_options(sub.add_parser("run", help="fine-tune once and report forgetting"))
    add_run_options(sub.add_parser("sweep", help="grid over objectives, λ values and seeds"), sweep=True)
    listing = sub.add_parser("list", help="runs in the store")
    listing.add_argument("--dataset")
    listing.add_argument("--objective")
    show = sub.add_parser("show", help="one run's metrics (or status)")
    show.add_argument("run")
    export = sub.add_parser("export", help="a run's metrics as CSV or JSON")
    export.add_argument("run")
    export.add_argument("--format", choices=("csv", "json"), default="json")
    export.add_argument("--out", type=Path)
    wise = sub.add_parser("wise", help="WiSE-FT: evaluate (1-α)·θ₀ + α·θ of a finished run")
    wise.add_argument("run")
    wise.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    for p in (listing, show, export, wise):
        p.add_argument("--store", type=Path, help="run store folder (default: $LDIFS_STORE or ./runs)")
    return parser


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "list": cmd_list, "show": cmd_show, "export": cmd_export,
            "wise": cmd_wise}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
