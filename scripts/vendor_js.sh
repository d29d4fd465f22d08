#!/usr/bin/env bash
# Vendor the JavaScript the book needs offline into book/_vendor/ (committed, about 7 MB).
#
# By default myst-nb loads require.js and the widget manager from cdnjs/jsdelivr and Sphinx loads
# MathJax from jsdelivr; the book points `nb_ipywidgets_js` and `mathjax_path` at these copies
# instead (see _config.yml), so a built page makes no external request.
#
# The folder must not be called `_static`: Jupyter Book 1 would then add every *.js under it to
# every page (all MathJax extensions, and the widget manager a second time).
#
# Usage: scripts/vendor_js.sh   (needs npm and the npm registry; re-runnable, replaces book/_vendor)
set -euo pipefail

HTML_MANAGER="@jupyter-widgets/html-manager@1.0.6"
REQUIREJS="requirejs@2.3.8"
MATHJAX="mathjax@3.2.2"
# sha256 of each npm tarball, recorded on the first download; a mismatch stops the script.
declare -A SHA256=(
  ["$HTML_MANAGER"]=6c198ceb99ba7e7526990a1de16e8147ad7d3a714e3fb06741183623c04b5f6e
  ["$REQUIREJS"]=777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec
  ["$MATHJAX"]=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/book/_vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
for spec in "$HTML_MANAGER" "$REQUIREJS" "$MATHJAX"; do
  tarball="$(npm pack --silent "$spec" | tail -n 1)"
  got="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [[ "$got" != "${SHA256[$spec]}" ]]; then
    echo "sha256 mismatch for $spec: expected ${SHA256[$spec]}, got $got" >&2
    exit 1
  fi
  name="${spec%@*}"
  name="${name//[@\/]/_}"
  mkdir -p "$name"
  tar -xzf "$tarball" -C "$name"
  echo "$spec -> $tarball sha256=$got"
done

rm -rf "$dest"
mkdir -p "$dest/mathjax/output/chtml/fonts" "$dest/mathjax/input/tex"
cp _jupyter-widgets_html-manager/package/dist/embed-amd.js "$dest/embed-amd.js"
cp requirejs/package/require.js "$dest/require.js"
es5=mathjax/package/es5
cp "$es5/tex-mml-chtml.js" "$dest/mathjax/"
cp -r "$es5/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp -r "$es5/input/tex/extensions" "$dest/mathjax/input/tex/"
cp -r "$es5/ui" "$es5/a11y" "$dest/mathjax/"
for license in _jupyter-widgets_html-manager requirejs mathjax; do
  cp "$license/package/LICENSE"* "$dest/LICENSE.$license" 2>/dev/null || true
done

cat > "$dest/README.md" <<TXT
Vendored by scripts/vendor_js.sh from the npm registry; do not edit by hand.

- embed-amd.js: $HTML_MANAGER (dist/embed-amd.js)
- require.js: $REQUIREJS
- mathjax/: $MATHJAX (es5: tex-mml-chtml.js, output/chtml/fonts/woff-v2, input/tex/extensions, ui, a11y)
TXT
du -sh "$dest"
