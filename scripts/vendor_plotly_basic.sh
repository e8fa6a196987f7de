#!/usr/bin/env bash
# Refresh edgecnn/report/assets/plotly-basic.min.js: plotly.js's own partial "basic" bundle (scatter, bar, pie;
# 1.2 MB instead of the 4.8 MB full bundle that the plotly Python package ships), at the plotly.js version
# the installed plotly package writes figures for. Run by hand when plotly is upgraded; nothing is fetched
# at run time (edgecnn.report.html falls back to the full bundle when the versions' major numbers differ).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python -c "import plotly.offline as o; print(o.get_plotlyjs_version())")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "plotly.js-basic-dist-min@${version}" >/dev/null && tar xzf plotly.js-basic-dist-min-*.tgz)
cp "$tmp/package/plotly-basic.min.js" edgecnn/report/assets/plotly-basic.min.js
cp "$tmp/package/LICENSE" edgecnn/report/assets/plotly-basic.LICENSE
sha256sum edgecnn/report/assets/plotly-basic.min.js
