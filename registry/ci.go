package registry

import (
	"fmt"
	"slices"
	"strings"
)

// CI systems Init writes a pull-request workflow for.
const (
	CIGitHub = "github"
	CIGitLab = "gitlab"
)

// CISystems lists the CI systems Init knows, in order.
var CISystems = []string{CIGitHub, CIGitLab}

// ciFiles returns the workflow files for the named CI systems.
func ciFiles(systems []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range systems {
		switch s {
		case CIGitHub:
			out[".github/workflows/poison.yml"] = githubWorkflow
		case CIGitLab:
			out[".gitlab-ci.yml"] = gitlabWorkflow
		default:
			return nil, fmt.Errorf("unknown CI system %q (known: %s)", s, strings.Join(CISystems, ", "))
		}
	}
	return out, nil
}

// ParseCI parses a --ci value: a comma-separated list of CISystems, "all"
// or "none".
func ParseCI(v string) ([]string, error) {
	switch v {
	case "", "all":
		return slices.Clone(CISystems), nil
	case "none":
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(CISystems, s) {
			return nil, fmt.Errorf("unknown CI system %q (known: %s, all, none)", s, strings.Join(CISystems, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// The workflows check every pull (merge) request: poison lint --base
// refuses entries that are invalid or history that edits, deletes or
// renames an entry; poison impact measures what the change rebuilds in
// the closure listed by impact.nix (when the registry has one) and posts
// the Markdown report as a comment.

const githubWorkflow = `# Checks every pull request of this poison registry (written by poison init).
#   1. poison lint --base: entries valid, history append-only.
#   2. poison impact: what the change rebuilds, posted as a PR comment.
#      Create impact.nix (an expression evaluating to the derivations to
#      measure, e.g. import ../app/release.nix {}) to enable it.
name: poison
on:
  pull_request:
permissions:
  contents: read
  pull-requests: write
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: cachix/install-nix-action@v27
      - name: Install poison
        run: nix profile install github:poison-nix/poison
      - name: Lint (valid entries, append-only history)
        run: poison lint --base "origin/${{ github.base_ref }}"
      - name: Impact
        if: hashFiles('impact.nix') != ''
        run: |
          git worktree add ../base "origin/${{ github.base_ref }}"
          poison resolve --registry ../base --lock base.lock
          nix-instantiate impact.nix | poison impact --registry . --lock base.lock --stdin --format markdown > impact.md
      - name: Comment the impact
        if: hashFiles('impact.md') != ''
        env:
          GH_TOKEN: ${{ github.token }}
        run: gh pr comment "${{ github.event.pull_request.number }}" --body-file impact.md
`

const gitlabWorkflow = `# Checks every merge request of this poison registry (written by poison init).
#   1. poison lint --base: entries valid, history append-only.
#   2. poison impact: what the change rebuilds, posted as an MR comment.
#      Create impact.nix (an expression evaluating to the derivations to
#      measure) to enable it, and a CI/CD variable POISON_GITLAB_TOKEN (a
#      project access token with the api scope) to post the comment.
poison:
  image: nixos/nix:latest
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
  variables:
    GIT_DEPTH: 0
  script:
    - nix --extra-experimental-features "nix-command flakes" profile install github:poison-nix/poison
    - git fetch origin "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
    - poison lint --base "origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
    - |
      if [ -f impact.nix ]; then
        git worktree add ../base "origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
        poison resolve --registry ../base --lock base.lock
        nix-instantiate impact.nix | poison impact --registry . --lock base.lock --stdin --format markdown > impact.md
        if [ -n "$POISON_GITLAB_TOKEN" ]; then
          curl --fail --silent --show-error --request POST \
            --header "PRIVATE-TOKEN: $POISON_GITLAB_TOKEN" \
            --data-urlencode "body@impact.md" \
            "$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
        fi
      fi
  artifacts:
    when: always
    paths:
      - impact.md
    expire_in: 1 week
`
