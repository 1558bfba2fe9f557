# The cold-start benchmark's protocol and recommender, sourced by the scripts that train on it
# (cold_start_models.sh, adasid_search.sh), so that every tokenizer of those scripts is compared on one recipe:
# Beauty under the cold-start protocol (5% of the items, seed 0, held out of every tokenizer and recommender), and
# the small every-target T5 of compare_beauty.yaml's size (2+2 layers, d_model 128) trained for 1,000 steps x 64
# history windows on top of each tokenizer.
COLD=(cold_item_fraction=0.05 cold_item_seed=0)
RECOMMENDER=(--config recipes/configs/genrec_beauty_t5.yaml "${COLD[@]}" num_user_tokens=2000  # as measured
             model.num_layers=2 model.num_decoder_layers=2 model.num_heads=4 model.d_kv=32 model.d_ff=512
             model.encoder=causal model.train_targets=every_item training.batch_size=64 training.max_steps=1000
             training.warmup_steps=200 training.eval_every_steps=1000 training.early_stopping_patience=null
             eval.valid_max_users=1000 eval.final_validation=false)
