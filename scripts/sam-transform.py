#!/usr/bin/env python3
"""Print the SAM transform's output for a template as JSON, offline (no AWS account).

    python3 scripts/sam-transform.py [template.yaml] [Name=Value ...]

Name=Value pairs are parameter values (the rest keep their defaults), for the few properties
the transform itself resolves (e.g. a function's Tracing decides whether SAM attaches the X-Ray
policy). It runs the AWS SAM translator (aws-sam-translator) that CloudFormation runs on deploy,
through the pinned cfn-lint's wrapper (cfn-lint depends on it): tests/api/template.rs reads
its output to check what is really deployed (stages, managed policies), not only what
template.yaml says. Exit status 1 with the translator's messages when the transform fails.
"""

import json
import sys

from cfnlint.decode import decode
from cfnlint.template.transforms._sam import Transform


def main() -> int:
    args = sys.argv[1:]
    path = args.pop(0) if args and "=" not in args[0] else "template.yaml"
    template, problems = decode(path)
    if problems or template is None:
        for p in problems or []:
            print(p, file=sys.stderr)
        return 1
    for arg in args:
        name, _, value = arg.partition("=")
        if name not in template.get("Parameters", {}):
            print(f"no parameter {name}", file=sys.stderr)
            return 1
        template["Parameters"][name]["Default"] = value
    transform = Transform(path, template, "us-east-1")
    problems = transform.transform_template()
    if problems:
        for p in problems:
            print(p.message, file=sys.stderr)
        return 1
    json.dump(transform.template(), sys.stdout, sort_keys=True, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
