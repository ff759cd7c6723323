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
        priority: _batch.priority
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
            BATCH_SHELL


for _batch in FIGURE_BATCHES:

    rule:
        name:
            _batch.rule
        input:
            _batch.inputs,
        output:
            **{
                name: report(file, category=category, labels=labels)
                for name, (file, category, labels) in _batch.outputs.items()
            },
        log:
            log_file(_batch.job),
        benchmark:
            benchmark_file(_batch.job)
        conda:
            SOFTWARE
        params:
            stylelab=STYLELAB,
            lines=_batch.lines,
        shell:
            BATCH_SHELL
