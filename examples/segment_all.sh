#!/usr/bin/env bash
# Segment every clip in a folder: each VIDEO (mp4/mov/mkv/avi) needs a first-frame mask named
# <stem>_mask.png beside it. Results go to OUT/<stem>/. A clip that fails is reported and the
# others still run; an interrupted clip is finished with --resume on the next run.
#
#   bash examples/segment_all.sh CLIPS_DIR OUT_DIR [extra vostool segment options...]
set -u
clips=${1:?usage: segment_all.sh CLIPS_DIR OUT_DIR [options...]}
out=${2:?usage: segment_all.sh CLIPS_DIR OUT_DIR [options...]}
shift 2
failed=0
shopt -s nullglob nocaseglob
for video in "$clips"/*.{mp4,mov,mkv,avi}; do
  stem=$(basename "${video%.*}")
  mask="$clips/${stem}_mask.png"
  if [[ ! -f "$mask" ]]; then
    echo "skip $video: no mask $mask" >&2
    continue
  fi
  dest="$out/$stem"
  if [[ -f "$dest/run.json" ]] && grep -q '"status": "complete"' "$dest/run.json"; then
    echo "done already: $dest" >&2
    continue
  fi
  resume=()
  [[ -f "$dest/run.json" ]] && resume=(--resume)
  if vostool segment "$video" --mask "$mask" -o "$dest" --quiet "${resume[@]}" "$@"; then
    echo "ok   $video -> $dest" >&2
  else
    echo "FAIL $video (exit $?)" >&2
    failed=$((failed + 1))
  fi
done
exit $((failed > 0))
