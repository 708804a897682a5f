"""The floor: the least a Django callback endpoint can do on this machine and database (parse the
request, INSERT its body, commit in autocommit, answer 200). Benches compare paycore to it in the
same run under the same gunicorn, middleware and connection settings. Not part of the product:
only ``bench.floor.settings`` installs it."""
