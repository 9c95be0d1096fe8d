"""`cbmir verify`: check that a running Orthanc's index matches its images (POST /cbmir/verify).

Why: an index built by an earlier release (which decoded some pixel layouts
wrongly) or damaged since gives wrong similar cases without any error. The
plugin re-embeds a random sample of stored instances from their files through
the one decoding path and compares; this prints what differs and the fix.
Exit status: 0 all match, 1 mismatches found, 2 the check could not run.
"""
from __future__ import annotations

import argparse
import json
import sys

from cbmir.tools.commands.import_images import add_connection_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--sample", type=int, default=100,
                        help="instances to re-embed, chosen at random (default 100, at most 2000)")
    parser.add_argument("--instance", action="append", default=[],
                        help="check this Orthanc instance ID (repeatable; instead of a sample)")
    parser.add_argument("--timeout", type=float, default=900.0, help="HTTP timeout in seconds")
    parser.add_argument("--json", action="store_true", help="print the plugin's JSON answer")


def run(args: argparse.Namespace) -> int:
    import requests

    body = {"instances": args.instance} if args.instance else {"sample": args.sample}
    url = args.url.rstrip("/") + "/cbmir/verify"
    auth = (args.user, args.password or "") if args.user else None
    try:
        response = requests.post(url, json=body, auth=auth, timeout=args.timeout)
    except requests.RequestException as error:
        print(f"cbmir verify: cannot reach Orthanc at {args.url}: {error}", file=sys.stderr)
        return 2
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:300]}
    if response.status_code != 200:
        reason = answer.get("error", response.text[:300]) if isinstance(answer, dict) else answer
        hint = " (pass --user and --password)" if response.status_code == 401 else ""
        print(f"cbmir verify: Orthanc answered {response.status_code}: {reason}{hint}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"checked {answer['checked_instances']} of {answer['indexed_instances']} indexed "
              f"instances ({answer['checked_frames']} frames) against their files with model "
              f"{answer['model_version']}")
        for item in answer["mismatches"]:
            cosine = "" if item.get("cosine") is None else f" cosine {item['cosine']}"
            frame = "" if item.get("frame") is None else f" frame {item['frame']}"
            print(f"MISMATCH {item['instance']}{frame}{cosine}: {item['reason']}")
        if answer["ok"]:
            print("all stored vectors match their images")
        else:
            shown = len(answer["mismatches"])
            print(f"{answer['mismatched_instances']} instance(s) differ"
                  f"{'' if shown >= answer['mismatched_instances'] else f' ({shown} listed)'}; "
                  f"fix: {answer['fix']}")
    return 0 if answer["ok"] else 1
