#!/bin/sh
# Bundle CodeMirror 6 (ES modules on npm) into one IIFE file: static/vendor/codemirror-6.0.2.min.js.
# Needs Node 20 + npm and the network once; the app and the tests only need the committed bundle.
# The exact versions are pinned in package.json here and listed in ../VENDORED.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$here/entry.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund >/dev/null   # exactly the versions of package-lock.json
# every package resolved exactly as pinned (a transitive update would change the bundle unnoticed)
npm ls --all --parseable --long | sed 's#.*node_modules/##' | grep -E '^(@codemirror|@lezer|codemirror|style-mod|crelt|w3c-keyname)' | sort -u > versions.txt
npx esbuild entry.js --bundle --minify --format=iife --target=es2020 --legal-comments=none \
    --outfile="$here/../codemirror-6.0.2.min.js"
cat versions.txt
sha256sum "$here/../codemirror-6.0.2.min.js"
