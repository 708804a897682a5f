from django.db import migrations


def backfill(apps, schema_editor):
    """Maps of payments that succeeded before outcomes were recorded: the current map paid its
    order, any other was a duplicate (the rule the success code applied then)."""
    Map = apps.get_model("payments", "PaymentOrderMap")
    succeeded = Map.objects.filter(payment__status="SUCCEEDED", outcome="")
    succeeded.filter(is_current=True).update(outcome="PAID")
    succeeded.filter(is_current=False).update(outcome="DUPLICATE")


class Migration(migrations.Migration):
    dependencies = [("payments", "0005_sweeps_and_map_outcomes")]
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
