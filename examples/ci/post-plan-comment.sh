#!/bin/sh
# Creates or updates the one pull-request comment that holds the plan.
#
#   post-plan-comment.sh PLAN.md
#
# PLAN.md is `backup plan --format markdown` output; its first line is a
# hidden marker (`<!-- backup-plan -->`). The script lists the pull
# request's comments (GitHub REST API, every page), and PATCHes the first one
# whose body starts with that marker, or POSTs a new one: one comment per
# pull request, updated on every push.
#
# Environment (GitHub Actions sets the first two):
#   GITHUB_REPOSITORY  owner/name
#   GITHUB_API_URL     default https://api.github.com (GitHub Enterprise: https://HOST/api/v3)
#   PR_NUMBER          the pull request's number
#   GITHUB_TOKEN       a token that may write pull-request comments
#                      (the job's token with `permissions: pull-requests: write`)
#
# Needs curl and jq. The token goes to curl in a header file, never on its
# command line.
set -eu

plan=${1:?usage: post-plan-comment.sh PLAN.md}
repository=${GITHUB_REPOSITORY:?set GITHUB_REPOSITORY to owner/name}
number=${PR_NUMBER:?set PR_NUMBER to the pull request number}
: "${GITHUB_TOKEN:?set GITHUB_TOKEN to a token that may comment}"
api=${GITHUB_API_URL:-https://api.github.com}

marker=$(head -n 1 "$plan")
case $marker in
    "<!--"*"-->") ;;
    *)
        echo "error: $plan does not start with a marker line like <!-- backup-plan -->" >&2
        exit 1
        ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
umask 077
printf 'Authorization: Bearer %s\n' "$GITHUB_TOKEN" >"$scratch/headers"
printf 'Accept: application/vnd.github+json\nX-GitHub-Api-Version: 2022-11-28\nExpect:\n' >>"$scratch/headers"

# request METHOD URL [BODY FILE]: the response body on stdout; fails on an HTTP error.
request() {
    if [ $# -gt 2 ]; then
        curl --silent --show-error --fail-with-body -H "@$scratch/headers" \
            -H 'Content-Type: application/json' -X "$1" --data-binary "@$3" "$2"
    else
        curl --silent --show-error --fail-with-body -H "@$scratch/headers" -X "$1" "$2"
    fi
}

comments="$api/repos/$repository/issues/$number/comments"
id=
page=1
while :; do
    request GET "$comments?per_page=100&page=$page" >"$scratch/page.json"
    id=$(jq -r --arg marker "$marker" \
        'map(select(.body | startswith($marker))) | first | .id // empty' "$scratch/page.json")
    [ -n "$id" ] && break
    [ "$(jq length "$scratch/page.json")" -lt 100 ] && break
    page=$((page + 1))
done

jq -Rs '{body: .}' "$plan" >"$scratch/body.json"
if [ -n "$id" ]; then
    request PATCH "$api/repos/$repository/issues/comments/$id" "$scratch/body.json" >"$scratch/answer.json"
    echo "Updated comment $id: $(jq -r '.html_url // empty' "$scratch/answer.json")"
else
    request POST "$comments" "$scratch/body.json" >"$scratch/answer.json"
    echo "Created comment $(jq -r '.id' "$scratch/answer.json"): $(jq -r '.html_url // empty' "$scratch/answer.json")"
fi
