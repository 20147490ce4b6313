"""The lab: what a person does with trained models to see and compare them. Temperature shown and measured
(lab/temperature.py), several models trained and compared on one corpus (lab/compare.py), and the web playground
(lab/playground.py). It sits on top of the pipeline: it trains, loads, samples and evaluates through the stages
below it.
"""
