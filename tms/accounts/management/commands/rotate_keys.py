from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tms.crypto import DecryptionError, encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS. Rotate keys by "
        "putting the new key first, running this, then removing the old key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model, names in encrypted_fields():
            count = 0
            manager = model._base_manager
            try:
                with transaction.atomic():
                    # Reading decrypts with any key; saving encrypts with the first. Chunks by
                    # primary key rather than a server-side cursor, which a failure would leave open.
                    pks = list(manager.order_by("pk").values_list("pk", flat=True))
                    for start in range(0, len(pks), 500):
                        chunk = manager.select_for_update().filter(pk__in=pks[start:start + 500]).only("pk", *names)
                        for row in chunk:
                            row.save(update_fields=names)
                            count += 1
            except DecryptionError as exc:
                raise CommandError(f"{model._meta.label}: {exc}; nothing of this model was changed") from None
            self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted")
            total += count
        self.stdout.write(f"done: {total} row(s)")
