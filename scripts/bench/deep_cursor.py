#!/usr/bin/env python3
"""Page through one user's tasks with the default page size and write the path of the last page.

  deep_cursor.py API_URL ACCESS_TOKEN OUT

Follows next_cursor from GET /tasks until it runs out, and writes `/tasks?cursor=<the cursor of
the last page>` to OUT: the request the benchmark repeats to page deep into a user with many
tasks (its answer is a full page when the count is a multiple of the page size). Prints how many
tasks and pages it saw.
"""

import json
import sys
import urllib.parse
import urllib.request


def page(api, token, cursor):
    path = "/tasks" + (f"?cursor={urllib.parse.quote(cursor)}" if cursor else "")
    req = urllib.request.Request(f"{api}{path}", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return path, json.loads(resp.read())


def main():
    api, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
    cursor, pages, tasks, last_path = None, 0, 0, "/tasks"
    while True:
        path, body = page(api, token, cursor)
        pages += 1
        tasks += len(body["items"])
        last_path = path
        cursor = body.get("next_cursor")
        if not cursor:
            break
    with open(out, "w") as f:
        f.write(last_path + "\n")
    print(f"{tasks} tasks in {pages} pages; the last page is {last_path[:40]}...", file=sys.stderr)


if __name__ == "__main__":
    main()
