# Tile variants of the causal window's kernels measured by run.sh (bench/NOTES.md, version 11).
# name|nvcc flags: forward FBQ queries a block, FMT 16-row tiles a warp, FBK keys a tile, FMINB
# blocks an SM (register cap); dq QROWS queries a block, QKT keys a tile, QMINB; dk/dv KROWS keys
# a block, KQT queries a tile, KMINB, KREGS (K and V fragments in registers instead of shared memory).
V=(
"w1|-DFBQ=128 -DFMT=1 -DFBK=64 -DFMINB=2 -DQROWS=128 -DQKT=32 -DQMINB=2 -DKROWS=64 -DKQT=32 -DKMINB=4 -DKREGS=0"
"w2|-DFBQ=256 -DFMT=1 -DFBK=64 -DFMINB=1 -DQROWS=256 -DQKT=32 -DQMINB=1 -DKROWS=128 -DKQT=16 -DKMINB=2 -DKREGS=0"
"w3|-DFBQ=256 -DFMT=1 -DFBK=32 -DFMINB=1 -DQROWS=128 -DQKT=16 -DQMINB=2 -DKROWS=128 -DKQT=32 -DKMINB=1 -DKREGS=1"
"w4|-DFBQ=128 -DFMT=1 -DFBK=64 -DFMINB=2 -DQROWS=64 -DQKT=32 -DQMINB=4 -DKROWS=64 -DKQT=64 -DKMINB=2 -DKREGS=1"
"w5|-DFBQ=128 -DFMT=1 -DFBK=64 -DFMINB=2 -DQROWS=128 -DQKT=64 -DQMINB=1 -DKROWS=64 -DKQT=32 -DKMINB=3 -DKREGS=1"
"w6|-DFBQ=128 -DFMT=2 -DFBK=64 -DFMINB=1 -DQROWS=64 -DQKT=64 -DQMINB=3 -DKROWS=64 -DKQT=64 -DKMINB=2 -DKREGS=1"
"w7|-DFBQ=64 -DFMT=2 -DFBK=64 -DFMINB=3 -DQROWS=128 -DQKT=32 -DQMINB=2 -DKROWS=128 -DKQT=16 -DKMINB=2 -DKREGS=0"
)
