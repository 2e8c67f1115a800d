from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("mailboxes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="mailbox",
            name="authorization_nonce",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
    ]
