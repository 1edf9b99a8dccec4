"""``danet-eval``: accuracy of artifacts and the reference on a labelled dataset, side by side.

Parsing only: the flags are generated from :class:`danet_deploy.verify.evaluate.EvalRequest`,
and :func:`danet_deploy.verify.evaluate.evaluate` does the work.
"""

from __future__ import annotations

from ..verify.evaluate import EvalRequest, evaluate
from .common import EXIT_OK, cli_main, print_json
from .dataclass_args import build_parser, parse_request

EPILOG = """examples:
  danet-eval danet_mmseg_r50_d8_cityscapes out/ort-int8 out/ov-int8 --data cityscapes:/data/cityscapes
  danet-eval out/ade-fp16 --data ade20k:/data/ADEChallengeData2016 --limit 500 --output eval/
  danet-eval out/voc-int8 --data voc:/data/VOCdevkit/VOC2012 --save-masks masks/
  danet-eval out/triton-int8 --data cityscapes:/data/cityscapes --server 127.0.0.1:8000
"""


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        EvalRequest,
        "danet-eval",
        "Per-class IoU, mIoU, mAcc and aAcc (mmsegmentation's IoUMetric) "
        "of one or more models on a labelled dataset, under each model's release test protocol.",
        EPILOG,
    )
    request = parse_request(EvalRequest, parser, argv)
    from ..verify.eval_report import terminal_table

    outcome = evaluate(request, log=(lambda _: None) if request.as_json else print)
    if request.as_json:
        print_json(outcome.to_dict())
    else:
        print(terminal_table(outcome))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main(None))
