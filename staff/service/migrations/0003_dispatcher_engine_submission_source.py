"""Dispatcher.engine; Submission.source: each file's bytes in the database, filled from
the stored files for the submissions made before."""
from django.conf import settings
from django.db import migrations, models


def read_stored_files(apps, schema_editor):
    Submission = apps.get_model('service', 'Submission')
    for submission in Submission.objects.all():
        path = settings.COURSE.data / submission.path
        submission.source = path.read_bytes() if path.is_file() else b''
        submission.save(update_fields=['source'])


class Migration(migrations.Migration):

    dependencies = [
        ('service', '0002_similarity_report'),
    ]

    operations = [
        migrations.AddField(
            model_name='dispatcher',
            name='engine',
            field=models.CharField(blank=True, help_text="the engine's description",
                                   max_length=300),
        ),
        migrations.AlterField(
            model_name='dispatcher',
            name='slots',
            field=models.IntegerField(help_text="the engine's slots (on Dask: of the workers now)"),
        ),
        migrations.AddField(
            model_name='submission',
            name='source',
            field=models.BinaryField(
                default=b'', help_text="the file's bytes: what dispatchers on any machine read"),
            preserve_default=False,
        ),
        migrations.RunPython(read_stored_files, migrations.RunPython.noop),
    ]
