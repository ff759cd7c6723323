# Sweeps (config `sweeps:`, stylelab.spec.sweeps): a job per point that no other run makes, the same command
# as the experiment's own rule with the point's spec; then each sweep's grid and metrics figures. Adding,
# removing or editing a sweep is a change to the config alone.

for _sweep in SWEEPS.values():
    for _point in solo(own_points(_sweep)):
        _record, _images = sweep_point_files(_sweep, _point)

        rule:
            name:
                SWEEP_RULES[_sweep.name, _point.name]
            input:
                **sweep_inputs(_sweep),
            output:
                **{f"image{i}": image for i, image in enumerate(_images)},
                record=_record,
            log:
                log_file(sweep_job(_sweep, _point)),
            benchmark:
                benchmark_file(sweep_job(_sweep, _point))
            conda:
                SOFTWARE
            threads: JOB_THREADS
            resources:
                **EXPERIMENT_RESOURCES,
                **experiment_resources(_sweep),
            params:
                stylelab=STYLELAB,
                engine=ENGINE,
                line=sweep_line(_sweep, _point),
            shell:
                RUN_SHELL

    for _drawing in () if RUNS_IN_ONE_JOB else ("grid", "metrics"):

        rule:
            name:
                re.sub(r"\W", "_", f"sweep_{_sweep.name}_{_drawing}")
            input:
                records=sweep_records(_sweep),
                images=[i for p in _sweep.points for i in point_files(_sweep, p)[1]],
            output:
                report(
                    sweep_figure_file(_sweep, _drawing),
                    category="Sweeps",
                    labels={"sweep": _sweep.name, "figure": _drawing},
                ),
            log:
                log_file(f"figures/{_sweep.name}_{_drawing}"),
            benchmark:
                benchmark_file(f"figures/{_sweep.name}_{_drawing}")
            conda:
                SOFTWARE
            params:
                stylelab=STYLELAB,
                line=sweep_figure_line(_sweep, _drawing),
            shell:
                RUN_SHELL
