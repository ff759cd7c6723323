# jobs.runs_in_one_job (the preview): each experiment's runs as one job, `stylelab batch` running their command
# lines one after another in one process, so the start-up (torch, diffusers, the models) is paid once per
# experiment; and each part's figures as one job. The runs are the same commands their own jobs would run
# (common.smk's *_line), with the same results. Deleting one run's image and asking for it reruns its batch.

for _batch in BATCHES:

    rule:
        name:
            _batch.rule
        input:
            **_batch.inputs,
        output:
            **_batch.outputs,
        log:
            log_file(_batch.job),
        benchmark:
            benchmark_file(_batch.job)
        # The generations next after the layers' jobs (prioritised in part1.smk): Part 2's transfers wait for them.
        priority: 1 if _batch.rule == "generate_runs" else 0
        conda:
            SOFTWARE
        threads: JOB_THREADS
        resources:
            **EXPERIMENT_RESOURCES,
            **_batch.resources,
        params:
            stylelab=STYLELAB,
            engine=ENGINE,
            lines=_batch.lines,
        shell:
            "{params.stylelab} batch {params.lines} > {log:q} 2>&1"


for _part, _figures in FIGURE_PARTS.items():
    if batched(_figures):

        rule:
            name:
                f"{part_name(_part)}_figures"
            input:
                records=[r for f in _figures for r in figure_inputs(f)["records"]],
                images=[i for f in _figures for i in figure_inputs(f)["images"]],
                shown=[i for f in _figures for i in figure_inputs(f)["shown"]],
            output:
                **{
                    f.name: report(
                        figure_file(f),
                        category=f.part,
                        labels={
                            "experiment": f.section or "inputs",
                            "figure": f.label,
                        },
                    )
                    for f in _figures
                },
            log:
                log_file(part_job(_part)),
            benchmark:
                benchmark_file(part_job(_part))
            conda:
                SOFTWARE
            params:
                stylelab=STYLELAB,
                lines=batch_lines([figure_line(f) for f in _figures]),
            shell:
                "{params.stylelab} batch {params.lines} > {log:q} 2>&1"


if sweep_figure_jobs() == [part_job("Sweeps")]:

    rule sweeps_figures:
        input:
            records=[r for s in SWEEPS.values() for r in sweep_records(s)],
            images=[
                i
                for s in SWEEPS.values()
                for p in s.points
                for i in point_files(s, p)[1]
            ],
        output:
            **{
                f"{s.name}_{d}": report(
                    sweep_figure_file(s, d),
                    category="Sweeps",
                    labels={"sweep": s.name, "figure": d},
                )
                for s in SWEEPS.values()
                for d in ("grid", "metrics")
            },
        log:
            log_file(part_job("Sweeps")),
        benchmark:
            benchmark_file(part_job("Sweeps"))
        conda:
            SOFTWARE
        params:
            stylelab=STYLELAB,
            lines=batch_lines(
                [
                    sweep_figure_line(s, d)
                    for s in SWEEPS.values()
                    for d in ("grid", "metrics")
                ]
            ),
        shell:
            "{params.stylelab} batch {params.lines} > {log:q} 2>&1"
