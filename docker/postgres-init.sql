-- One PostgreSQL server, one database per component (run once by the postgres image at first start).
CREATE DATABASE retention;
CREATE DATABASE mlflow;
CREATE DATABASE airflow;
