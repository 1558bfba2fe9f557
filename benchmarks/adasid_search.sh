#!/usr/bin/env bash
# Issue 23: AdaSID's settings chosen on validation (never on test). Each arm is an AdaSID tokenizer with other
# gate settings, trained exactly as the cold-start benchmark's tokenizers (benchmarks/cold_start_models.sh: Beauty,
# cold-start protocol 5% / seed 0, 100 epochs) with the same recommender on top (the small every-target T5, 1,000
# steps x 64 windows); then every arm and the references (rqvae, quasid, adasid) rank all validation users with
# per-user metrics, for paired tests on validation. Seed s trains tokenizer seed s and recommender seed 42 + s;
# seed 0 is the cold-start benchmark's own runs (folder NAME), seed s > 0 goes to NAME_s<s>:
#
#   GENREC_DATA_DIR=../shared/data SEEDS="0 1" bash benchmarks/adasid_search.sh
#   python benchmarks/paired_runs.py --split validation --baseline adasid adasid=runs/cold_start/adasid/genrec,runs/cold_start/adasid_s1/genrec \
#       adasid_partial08=runs/cold_start/adasid_partial08/genrec,runs/cold_start/adasid_partial08_s1/genrec ...
#
# Arms (the diagnostics in BENCHMARKS.md: full collisions are near-duplicates that users buy together, told apart
# only by the dedup code; compatible sibling pairs have a median content cosine of ~0.78):
#   adasid_partial08   the gate relaxes partial overlaps only (relax_collisions false), theta_c 0.8
#   adasid_theta08     theta_c 0.8, collisions relaxed too (separates the two changes)
#   adasid_partial07   partial overlaps only, theta_c 0.7
#   adasid_nogate      no gate at all (every overlap repelled, weighted by load and schedule): is stage 1 worth it?
# Finished steps are kept on a rerun; an unfinished recommender resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
OUT=${OUT:-runs/cold_start}
export OMP_NUM_THREADS=${THREADS:-1}
source benchmarks/cold_start_recipe.sh  # COLD (the protocol) and RECOMMENDER (the recipe)
declare -A CONFIG=([rqvae]=rqvae [quasid]=quasid [adasid]=adasid [adasid_partial08]=adasid [adasid_theta08]=adasid [adasid_partial07]=adasid
                   [adasid_nogate]=adasid)
declare -A ARMS=(
  [rqvae]="" [quasid]="" [adasid]=""
  [adasid_partial08]="regularizers.gate.theta_c=0.8 regularizers.gate.relax_collisions=false"
  [adasid_theta08]="regularizers.gate.theta_c=0.8"
  [adasid_partial07]="regularizers.gate.theta_c=0.7 regularizers.gate.relax_collisions=false"
  [adasid_nogate]="regularizers.gate.enabled=false"
)
ORDER=(${ORDER:-adasid_partial08 rqvae quasid adasid adasid_theta08 adasid_partial07 adasid_nogate})
for seed in ${SEEDS:-0}; do
  for name in "${ORDER[@]}"; do
    dir="$OUT/$name$([ "$seed" = 0 ] || echo "_s$seed")"
    read -r -a overrides <<< "${ARMS[$name]}"
    [ -f "$dir/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config "recipes/configs/tokenizer_${CONFIG[$name]}.yaml" \
        "${COLD[@]}" epochs=100 log_every=0 seed="$seed" output_dir="$dir/tokenizer" "${overrides[@]}"
    [ -f "$dir/genrec/metrics.json" ] || python recipes/train_genrec.py "${RECOMMENDER[@]}" --resume \
        tokenizer_dir="$dir/tokenizer" output_dir="$dir/genrec" training.seed=$((42 + seed))
    [ -f "$dir/genrec/per_user_validation.json" ] || python recipes/evaluate_genrec.py --run "$dir/genrec" --split validation \
        --per-user "$dir/genrec/per_user_validation.json" --out "$dir/genrec/eval_validation.json"
  done
done
