#!/usr/bin/env bash
# Issue 23: AdaSID's settings chosen on validation (never on test). Each arm is an AdaSID tokenizer with other
# gate settings, trained exactly as the cold-start benchmark's tokenizers (benchmarks/cold_start_models.sh: Beauty,
# cold-start protocol 5% / seed 0, 100 epochs) with the same recommender on top (the small every-target T5, 1,000
# steps x 64 windows); then every arm and the reference runs of that benchmark (rqvae, quasid, adasid) rank all
# validation users with per-user metrics, for paired tests on validation:
#
#   GENREC_DATA_DIR=../shared/data bash benchmarks/adasid_search.sh
#   python benchmarks/paired_runs.py --split validation --baseline adasid adasid=runs/cold_start/adasid/genrec \
#       adasid_partial08=runs/cold_start/adasid_partial08/genrec rqvae=runs/cold_start/rqvae/genrec ...
#
# Arms: adasid_partial08: the gate relaxes compatible partial overlaps only (relax_collisions false: the diagnostics
# show full collisions are near-duplicates that users buy together, told apart only by the dedup code) at
# theta_c 0.8 instead of 0.9 (more of the compatible sibling pairs: their median content cosine is ~0.78).
# Finished steps are kept on a rerun; an unfinished recommender resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
OUT=${OUT:-runs/cold_start}
export OMP_NUM_THREADS=${THREADS:-1}
COLD=(cold_item_fraction=0.05 cold_item_seed=0)
declare -A ARMS=(
  [adasid_partial08]="regularizers.gate.theta_c=0.8 regularizers.gate.relax_collisions=false"
)
for name in "${!ARMS[@]}"; do
  read -r -a overrides <<< "${ARMS[$name]}"
  [ -f "$OUT/$name/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config recipes/configs/tokenizer_adasid.yaml \
      "${COLD[@]}" epochs=100 log_every=0 output_dir="$OUT/$name/tokenizer" "${overrides[@]}"
  [ -f "$OUT/$name/genrec/metrics.json" ] || python recipes/train_genrec.py --config recipes/configs/genrec_beauty_full.yaml --resume \
      "${COLD[@]}" tokenizer_dir="$OUT/$name/tokenizer" output_dir="$OUT/$name/genrec" \
      model.num_layers=2 model.num_decoder_layers=2 model.num_heads=4 model.d_kv=32 model.d_ff=512 \
      model.encoder=causal model.train_targets=every_item training.batch_size=64 training.max_steps=1000 \
      training.warmup_steps=200 training.eval_every_steps=1000 training.early_stopping_patience=null \
      eval.valid_max_users=1000 eval.final_validation=false
done
for name in rqvae quasid adasid "${!ARMS[@]}"; do
  run="$OUT/$name/genrec"
  [ -f "$run/per_user_validation.json" ] || python recipes/evaluate_genrec.py --run "$run" --split validation \
      --per-user "$run/per_user_validation.json" --out "$run/eval_validation.json"
done
